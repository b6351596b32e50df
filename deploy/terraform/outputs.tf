output "lake" {
  description = "Lake root to pass as --output (stream, history) and --input (analysis)."
  value       = "gs://${google_storage_bucket.lake.name}/lake"
}

output "temp_location" {
  description = "Dataflow --temp_location."
  value       = "gs://${google_storage_bucket.dataflow.name}/tmp"
}

output "subscription" {
  description = "Pub/Sub subscription of the stream job (--source=pubsub --subscription=…)."
  value       = google_pubsub_subscription.stream.id
}

output "service_account" {
  description = "The jobs' service account (--service_account_email)."
  value       = google_service_account.dataflow.email
}

output "image_repository" {
  description = "Where to push the Flex Template images (<repository>/stream and <repository>/analysis)."
  value       = local.image_base
}
