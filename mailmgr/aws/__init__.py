"""The only package that imports aiobotocore: clients, assumed roles, secrets, error mapping."""

from mailmgr.aws.clients import AwsClients, AwsSettings
from mailmgr.aws.errors import classify, error_code
from mailmgr.aws.secrets import SecretStore

__all__ = ["AwsClients", "AwsSettings", "SecretStore", "classify", "error_code"]
