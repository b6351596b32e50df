# DroneCop on Google Cloud: the lake and Dataflow's temp bucket, Pub/Sub for drone messages,
# alerts and dead letters, one service account with only what the jobs need, the image
# repository, and the Dataflow jobs launched from the Flex Templates (deploy/dataflow/).

locals {
  # Names as the pipelines use them (transforms/kafka_settings.py; the stream's consumer group).
  drone_messages_topic = "drone-messages"
  alerts_topic         = "drone-alerts"
  dead_letter_topic    = "drone-dead-letter"
  stream_subscription  = "dronecop-stream"

  lake_bucket     = "${var.bucket_prefix}-lake"
  dataflow_bucket = "${var.bucket_prefix}-dataflow"
  image_base      = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.dronecop.repository_id}"
  experiments     = ["use_runner_v2"]
}

data "google_project" "this" {}

# --- Storage ---------------------------------------------------------------------------

resource "google_storage_bucket" "access_logs" {
  # checkov:skip=CKV_GCP_62: this is the access-log bucket itself; logging it into itself would loop
  name                        = "${var.bucket_prefix}-access-logs"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  lifecycle_rule {
    condition {
      age = 365
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "lake" {
  name                        = local.lake_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
  lifecycle_rule {
    condition {
      age            = var.lake_nearline_days
      matches_prefix = ["lake/drone/", "lake/history/"]
    }
    action {
      type          = "SetStorageClass"
      storage_class = "NEARLINE"
    }
  }
  lifecycle_rule {
    condition {
      age            = var.dead_letter_retention_days
      matches_prefix = ["lake/dead_letter/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    # Files replaced by a rewrite of their window stay as noncurrent versions for a week.
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }
}

resource "google_storage_bucket" "dataflow" {
  name                        = local.dataflow_bucket
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  versioning {
    enabled = true
  }
  logging {
    log_bucket = google_storage_bucket.access_logs.name
  }
  lifecycle_rule {
    condition {
      age            = var.temp_retention_days
      matches_prefix = ["tmp/", "staging/"]
    }
    action {
      type = "Delete"
    }
  }
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 1
    }
    action {
      type = "Delete"
    }
  }
}

# --- Pub/Sub ---------------------------------------------------------------------------

resource "google_pubsub_topic" "drone_messages" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; a customer key would add a KMS key ring the project does not otherwise need
  name                       = local.drone_messages_topic
  message_retention_duration = "604800s"
}

resource "google_pubsub_topic" "alerts" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; a customer key would add a KMS key ring the project does not otherwise need
  name = local.alerts_topic
}

resource "google_pubsub_topic" "dead_letter" {
  # checkov:skip=CKV_GCP_83: Google-managed encryption; a customer key would add a KMS key ring the project does not otherwise need
  name = local.dead_letter_topic
}

resource "google_pubsub_subscription" "stream" {
  name                       = local.stream_subscription
  topic                      = google_pubsub_topic.drone_messages.id
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s"
  dead_letter_policy {
    dead_letter_topic     = google_pubsub_topic.dead_letter.id
    max_delivery_attempts = 10
  }
  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }
}

resource "google_pubsub_subscription" "dead_letter" {
  # Keeps what the dead-letter policy forwards until someone looks.
  name                       = "${local.dead_letter_topic}-hold"
  topic                      = google_pubsub_topic.dead_letter.id
  message_retention_duration = "604800s"
}

# Pub/Sub's own service agent moves undeliverable messages to the dead-letter topic.
resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  topic  = google_pubsub_topic.dead_letter.id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

resource "google_pubsub_subscription_iam_member" "dead_letter_forwarder" {
  subscription = google_pubsub_subscription.stream.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-pubsub.iam.gserviceaccount.com"
}

# --- Identity: what the jobs may do, and nothing else -----------------------------------

resource "google_service_account" "dataflow" {
  account_id   = "dronecop-dataflow"
  display_name = "DroneCop Dataflow jobs"
}

resource "google_project_iam_member" "dataflow_worker" {
  project = var.project
  role    = "roles/dataflow.worker"
  member  = "serviceAccount:${google_service_account.dataflow.email}"
}

# Objects in the lake and in Dataflow's temp and staging bucket, and nothing else of Storage.
resource "google_storage_bucket_iam_member" "job_objects" {
  for_each = { lake = google_storage_bucket.lake.name, dataflow = google_storage_bucket.dataflow.name }
  bucket   = each.value
  role     = "roles/storage.objectAdmin"
  member   = "serviceAccount:${google_service_account.dataflow.email}"
}

resource "google_pubsub_subscription_iam_member" "stream_reader" {
  subscription = google_pubsub_subscription.stream.id
  role         = "roles/pubsub.subscriber"
  member       = "serviceAccount:${google_service_account.dataflow.email}"
}

resource "google_pubsub_topic_iam_member" "job_publisher" {
  for_each = { alerts = google_pubsub_topic.alerts.id, dead_letter = google_pubsub_topic.dead_letter.id }
  topic    = each.value
  role     = "roles/pubsub.publisher"
  member   = "serviceAccount:${google_service_account.dataflow.email}"
}

resource "google_artifact_registry_repository" "dronecop" {
  # checkov:skip=CKV_GCP_84: Google-managed encryption; a customer key would add a KMS key ring the project does not otherwise need
  repository_id = "dronecop"
  location      = var.region
  format        = "DOCKER"
  description   = "DroneCop Flex Template and worker images (deploy/dataflow/Dockerfile)"
}

resource "google_artifact_registry_repository_iam_member" "image_reader" {
  repository = google_artifact_registry_repository.dronecop.name
  location   = var.region
  role       = "roles/artifactregistry.reader"
  member     = "serviceAccount:${google_service_account.dataflow.email}"
}

# --- The jobs ----------------------------------------------------------------------------

locals {
  # The two Flex Templates (deploy/dataflow/*-metadata.json) and the parameters each job gets.
  flex_jobs = {
    stream = {
      launch    = var.run_stream_job
      streaming = true
      on_delete = "drain"
      parameters = {
        source                   = "pubsub"
        subscription             = google_pubsub_subscription.stream.id
        bootstrap_servers        = var.kafka_bootstrap_servers
        output                   = "gs://${google_storage_bucket.lake.name}/lake"
        alerts_topic             = local.alerts_topic
        dead_letter_topic        = local.dead_letter_topic
        window_minutes           = "5"
        allowed_lateness_minutes = "120"
      }
    }
    analysis = {
      launch    = var.run_analysis_job
      streaming = false
      on_delete = "cancel"
      parameters = {
        input  = "gs://${google_storage_bucket.lake.name}/lake"
        output = "gs://${google_storage_bucket.lake.name}/reports/latest"
      }
    }
  }
}

resource "google_dataflow_flex_template_job" "dronecop" {
  provider                = google-beta
  for_each                = { for name, job in local.flex_jobs : name => job if job.launch }
  name                    = "dronecop-${each.key}"
  region                  = var.region
  container_spec_gcs_path = "gs://${google_storage_bucket.dataflow.name}/templates/${each.key}.json"
  service_account_email   = google_service_account.dataflow.email
  temp_location           = "gs://${google_storage_bucket.dataflow.name}/tmp"
  staging_location        = "gs://${google_storage_bucket.dataflow.name}/staging"
  sdk_container_image     = "${local.image_base}/${each.key}:${var.image_tag}"
  max_workers             = var.max_workers
  additional_experiments  = local.experiments
  enable_streaming_engine = each.value.streaming
  ip_configuration        = "WORKER_IP_PRIVATE"
  on_delete               = each.value.on_delete
  parameters              = each.value.parameters
}
