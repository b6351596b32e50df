#!/bin/sh
# Create the compose secrets once, as random values in deploy/compose/secrets/ (git ignores
# the folder); an existing secret is kept, so running this again changes nothing.
set -eu
folder="$(dirname "$0")/secrets"
mkdir -p "$folder"
chmod 700 "$folder"
for name in lake_user lake_password db_password desk_token; do
  if [ ! -s "$folder/$name" ]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(24))' > "$folder/$name")
  fi
done
echo "secrets in $folder (sign in to the desk with the token in $folder/desk_token)"
