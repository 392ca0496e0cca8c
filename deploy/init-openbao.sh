#!/bin/sh
# Initialise, unseal and configure OpenBao for keyvault; safe to run again (docker compose runs
# it at every `up`). Run in the OpenBao image (it has `bao`) as the openbao-init service:
#   - first run: `bao operator init` with one unseal key; the key and root token are kept in
#     /openbao/init (a volume only this job mounts), mode 0600
#   - every run: unseal if sealed
#   - Transit (key switchyard-provider-keys), KV v2 at switchyard/, the keyvault policy,
#     AppRole switchyard-keyvault; its role_id and a fresh secret_id are written to
#     /openbao/approle, which keyvault mounts read-only (GATEWAY_VAULT_APPROLE_DIR)
# Production: use auto-unseal (a KMS) and your own init ceremony instead of a stored key.
set -eu
export BAO_ADDR="${BAO_ADDR:-http://openbao:8200}"
INIT=/openbao/init/init.txt
APPROLE=/openbao/approle
POLICY=/openbao/policies/keyvault.hcl

tries=0
until bao status >/dev/null 2>&1 || [ $? -eq 2 ]; do  # 2: answering, but sealed
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "OpenBao at $BAO_ADDR does not answer" >&2; exit 1; }
  sleep 1
done

if ! bao status -format=json 2>/dev/null | grep -q '"initialized": true'; then
  umask 077
  bao operator init -key-shares=1 -key-threshold=1 > "$INIT"
  echo "OpenBao initialised; unseal key and root token are in the openbao-init volume"
fi
UNSEAL_KEY=$(sed -n 's/^Unseal Key 1: //p' "$INIT")
ROOT_TOKEN=$(sed -n 's/^Initial Root Token: //p' "$INIT")
if bao status -format=json 2>/dev/null | grep -q '"sealed": true'; then
  bao operator unseal "$UNSEAL_KEY" >/dev/null
fi
export BAO_TOKEN="$ROOT_TOKEN"
tries=0
until bao secrets list >/dev/null 2>&1; do  # the raft leader is elected after unsealing
  tries=$((tries + 1))
  [ "$tries" -lt 60 ] || { echo "OpenBao did not become active" >&2; exit 1; }
  sleep 1
done

bao secrets list | grep -q '^transit/' || bao secrets enable transit
bao read transit/keys/switchyard-provider-keys >/dev/null 2>&1 ||
  bao write -f transit/keys/switchyard-provider-keys type=aes256-gcm96
bao secrets list | grep -q '^switchyard/' || bao secrets enable -path=switchyard kv-v2
bao policy write switchyard-keyvault "$POLICY"
bao auth list | grep -q '^approle/' || bao auth enable approle
bao write auth/approle/role/switchyard-keyvault token_policies=switchyard-keyvault token_ttl=1h token_max_ttl=24h
umask 077
bao read -field=role_id auth/approle/role/switchyard-keyvault/role-id > "$APPROLE/role_id"
bao write -f -field=secret_id auth/approle/role/switchyard-keyvault/secret-id > "$APPROLE/secret_id"
chmod 0644 "$APPROLE/role_id" "$APPROLE/secret_id"  # keyvault runs as another user; the volume is its alone
echo "OpenBao is unsealed and configured for keyvault"
