# OpenBao for docker-compose: integrated (raft) storage on the openbao-data volume.
# Initialise once with `bao operator init`, unseal after every restart (or configure auto-unseal).
storage "raft" {
  path    = "/openbao/data"
  node_id = "openbao-1"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true # put TLS here, or on the network, for anything beyond a private network
}

api_addr     = "http://openbao:8200"
cluster_addr = "http://openbao:8201"
ui           = false
