terraform {
  # 1.9: variable validations may refer to other variables (visibility vs function timeout).
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.30, < 7.0"
    }
  }
}
