# The Vault/OpenBao policy the keyvault service needs, and nothing more. Production: enable
# Transit at transit/ and KV v2 at switchyard/ once as an operator, create the Transit key
# (aes256-gcm96), then give keyvault an AppRole with this policy (see README, "Vault").

# Encrypt and decrypt provider keys; rotate the key and retire old versions.
path "transit/encrypt/switchyard-provider-keys" { capabilities = ["update"] }
path "transit/decrypt/switchyard-provider-keys" { capabilities = ["update"] }
path "transit/keys/switchyard-provider-keys" { capabilities = ["read"] }
path "transit/keys/switchyard-provider-keys/rotate" { capabilities = ["update"] }
path "transit/keys/switchyard-provider-keys/config" { capabilities = ["update"] }

# Ciphertexts and metadata of provider keys, and keyvault's transport key.
path "switchyard/data/*" { capabilities = ["create", "read", "update"] }
path "switchyard/metadata/*" { capabilities = ["list", "read", "delete"] }

# Keep its own token alive.
path "auth/token/renew-self" { capabilities = ["update"] }
path "auth/token/lookup-self" { capabilities = ["read"] }
