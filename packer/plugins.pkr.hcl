# Plugins used by raincast.pkr.hcl. Run `packer init .` once in this folder
# (Packer 1.7 or later) to install them.
#
# This block lives in its own file because Debian's Packer 1.6.6, used by CI,
# cannot read `required_plugins`: CI validates raincast.pkr.hcl on its own,
# where 1.6.6 still has these builders and the provisioner built in.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.2.0"
    }
    ansible = {
      source  = "github.com/hashicorp/ansible"
      version = ">= 1.1.0"
    }
  }
}
