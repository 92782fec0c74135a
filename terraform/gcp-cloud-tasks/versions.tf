terraform {
  required_version = ">= 1.9"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.1: google_cloud_tasks_queue's http_target (the queue pins URL and token).
      version = ">= 6.1, < 8.0"
    }
  }
}
