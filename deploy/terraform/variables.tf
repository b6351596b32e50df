variable "project" {
  description = "Google Cloud project id that holds everything below."
  type        = string
}

variable "region" {
  description = "Region of the buckets, the image repository and the Dataflow jobs, e.g. us-east1."
  type        = string
  default     = "us-east1"
}

variable "bucket_prefix" {
  description = "Prefix of the bucket names (bucket names are global): <prefix>-lake and <prefix>-dataflow."
  type        = string
}

variable "image_tag" {
  description = "Tag of the Flex Template images pushed to the dronecop repository (deploy/dataflow/Dockerfile)."
  type        = string
  default     = "0.1.0"
}

variable "kafka_bootstrap_servers" {
  description = "Kafka the stream job publishes alerts and dead letters to (it reads drone messages from Pub/Sub)."
  type        = string
}

variable "max_workers" {
  description = "Most Dataflow workers a job scales to; the dataflow profile's parallelism (runners/profiles.py)."
  type        = number
  default     = 8
}

variable "run_stream_job" {
  description = "Whether to launch the streaming Flex Template job (its template must have been built first)."
  type        = bool
  default     = false
}

variable "run_analysis_job" {
  description = "Whether to launch the batch analysis Flex Template job once (it ends when the report is written)."
  type        = bool
  default     = false
}

variable "temp_retention_days" {
  description = "Days after which Dataflow's temp and staging files are deleted."
  type        = number
  default     = 7
}

variable "dead_letter_retention_days" {
  description = "Days the lake keeps dead-letter files (lake/dead_letter/) before deleting them."
  type        = number
  default     = 90
}

variable "lake_nearline_days" {
  description = "Days after which lake files move to the Nearline storage class."
  type        = number
  default     = 30
}
