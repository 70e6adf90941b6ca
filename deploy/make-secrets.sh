#!/bin/sh
# Writes the secrets deploy/docker-compose.yml reads, with fresh random passwords, into
# ./secrets/ (or the folder given as $1). Existing files are kept, so running it again is safe.
# The MinIO root user doubles as mailmgr's S3 key pair: with real AWS S3, replace
# aws-credentials with an IAM user's keys that may put and get objects in the archive bucket.
set -eu
dir=${1:-$(dirname "$0")/secrets}
mkdir -p "$dir"
# The folder is private; the files are readable by all because Docker Compose bind-mounts them
# with these permissions and mailmgr runs as uid 10001, not root.
chmod 700 "$dir"
umask 022

random() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }

write() {  # write NAME CONTENT: unless NAME exists
  if [ ! -e "$dir/$1" ]; then printf '%s\n' "$2" >"$dir/$1"; fi
}

pg_password=$(random)
write postgres-password "$pg_password"
# The DSN matches the postgres service; read the password back in case the file already existed.
pg_password=$(cat "$dir/postgres-password")
write postgres-dsn "postgresql://mailmgr:$pg_password@postgres:5432/mailmgr"
write minio-root-user "mailmgr"
write minio-root-password "$(random)"
write aws-credentials "[default]
aws_access_key_id = $(cat "$dir/minio-root-user")
aws_secret_access_key = $(cat "$dir/minio-root-password")"
echo "secrets in $dir"
