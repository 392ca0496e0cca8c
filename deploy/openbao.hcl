# OpenBao for docker-compose: integrated (raft) storage on the openbao-data volume, mounted at
# /openbao/file, the directory the image gives its `openbao` user. deploy/init-openbao.sh
# (the openbao-init service) initialises, unseals and configures it.
storage "raft" {
  path    = "/openbao/file"
  node_id = "openbao-1"
}

listener "tcp" {
  address     = "0.0.0.0:8200"
  tls_disable = true # put TLS here, or on the network, for anything beyond a private network
}

api_addr     = "http://openbao:8200"
cluster_addr = "http://openbao:8201"
ui           = false
disable_mlock = true
