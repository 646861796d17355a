# Raincast machine image: a Debian 12 base provisioned by ../ansible/site.yml.
#
#   packer init .                                  # once: installs the plugins
#   packer build -only='amazon-ebs.debian' \
#     -var raincast_binary=../target/release/raincast -var version=0.1.0 .
#
# The `null.existing` source runs the same provisioning against a machine you
# already have over SSH (a local VM, say), to try the playbook before paying
# for an AMI build:
#   packer build -only='null.existing' -var ssh_host=192.0.2.10 \
#     -var raincast_binary=../target/release/raincast .

variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region the AMI is built in."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the temporary build machine."
}

variable "version" {
  type        = string
  default     = "0.1.0"
  description = "Raincast version: goes into the AMI name and tags."
}

variable "raincast_binary" {
  type        = string
  default     = "../target/release/raincast"
  description = "Path of the Linux x86_64 release binary. The playbook installs it stripped; its debug file stays on this machine in <binary's folder>/stripped/raincast.debug."
}

variable "ansible_extra_arguments" {
  type        = list(string)
  default     = []
  description = "More ansible-playbook arguments, e.g. [\"--extra-vars\", \"raincast_secrets_ssm_prefix=/raincast/prod/\"]. Never secrets: the image must hold none (they are SSM parameters read by the service)."
}

variable "ssh_host" {
  type        = string
  default     = "127.0.0.1"
  description = "Host provisioned by the null.existing source."
}

variable "ssh_username" {
  type        = string
  default     = "admin"
  description = "SSH user of the null.existing source (sudo without a password)."
}

locals {
  timestamp = regex_replace(timestamp(), "[- TZ:]", "")
}

# Debian's official bookworm AMIs (owner 136693071363 is Debian's account).
source "amazon-ebs" "debian" {
  region        = var.region
  instance_type = var.instance_type
  ami_name      = "raincast-${var.version}-${local.timestamp}"
  ssh_username  = "admin"

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      root-device-type    = "ebs"
      virtualization-type = "hvm"
    }
    owners      = ["136693071363"]
    most_recent = true
  }

  launch_block_device_mappings {
    device_name           = "/dev/xvda"
    volume_size           = 16
    volume_type           = "gp3"
    iops                  = 3000
    throughput            = 125
    encrypted             = true
    delete_on_termination = true
  }

  tags = {
    Name        = "raincast-${var.version}"
    Application = "raincast"
    Version     = var.version
  }
}

source "null" "existing" {
  communicator = "ssh"
  ssh_host     = var.ssh_host
  ssh_username = var.ssh_username
  # Keys come from the running ssh-agent.
  ssh_agent_auth = true
}

build {
  sources = [
    "source.amazon-ebs.debian",
    "source.null.existing",
  ]

  provisioner "ansible" {
    playbook_file = "${path.root}/../ansible/site.yml"
    user          = build.User
    groups        = ["raincast"]
    extra_arguments = concat([
      "--extra-vars", "raincast_binary_src=${var.raincast_binary}",
      # An image must hold no data from the build machine: enable the unit,
      # do not start it; it starts on the instance's first boot.
      "--extra-vars", "raincast_start_service=false",
    ], var.ansible_extra_arguments)
    ansible_env_vars = ["ANSIBLE_CONFIG=${path.root}/../ansible/ansible.cfg"]
  }
}
