#!/usr/bin/env bash
# Starts a Balsa cluster on 127.0.0.1 for trying it out: N ingesters spread
# over Z zones (replication factor 3), plus one process running the
# distributor, querier and query-frontend. All share one object-storage
# folder. Logs, data and pids go under $DIR (default ./balsa-cluster).
#
#   deploy/local/cluster.sh start [--ingesters 3] [--zones 3] [--partitions 8]
#   deploy/local/cluster.sh stop
#
# Ports: ingester i listens on HTTP 3100+i and gRPC 9100+i; the front on
# HTTP 3100 and gRPC 9100. Push to and query http://127.0.0.1:3100.
set -euo pipefail

BALSA=${BALSA:-$(command -v balsa || echo "${CARGO_TARGET_DIR:-target}/release/balsa")}
DIR=${DIR:-./balsa-cluster}
cmd=${1:-start}; shift || true
ingesters=3 zones=3 partitions=8
while [ $# -gt 0 ]; do
  case "$1" in
    --ingesters) ingesters=$2; shift 2 ;;
    --zones) zones=$2; shift 2 ;;
    --partitions) partitions=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

stop() {
  for f in "$DIR"/*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

case "$cmd" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop [options]" >&2; exit 2 ;;
esac

[ -x "$BALSA" ] || { echo "balsa binary not found at $BALSA (set BALSA=...)" >&2; exit 1; }
mkdir -p "$DIR"
cat > "$DIR/cluster.yaml" <<YAML
storage:
  filesystem:
    directory: $(cd "$DIR" && pwd)/objects
YAML
seed=127.0.0.1:9101
seeds=""
for i in $(seq 1 "$ingesters"); do
  zone="zone-$(printf "\\x$(printf %x $((96 + (i - 1) % zones + 1)))")"
  join=()
  [ "$i" -gt 1 ] && join=(--join="$seed")
  "$BALSA" --target=ingester --node.id="$i" --zone="$zone" \
    --http.addr=127.0.0.1:$((3100 + i)) --grpc.addr=127.0.0.1:$((9100 + i)) \
    --data.dir="$DIR/ingester-$i" --config.file="$DIR/cluster.yaml" \
    --ring.partitions="$partitions" --ring.replication-factor=3 "${join[@]}" \
    > "$DIR/ingester-$i.log" 2>&1 &
  echo $! > "$DIR/ingester-$i.pid"
  seeds="$seeds${seeds:+,}127.0.0.1:$((9100 + i))"
  echo "ingester $i ($zone): http://127.0.0.1:$((3100 + i))"
done
"$BALSA" --target=distributor,querier,query-frontend --node.id=100 \
  --http.addr=127.0.0.1:3100 --grpc.addr=127.0.0.1:9100 --data.dir="$DIR/front" \
  --config.file="$DIR/cluster.yaml" --join="$seeds" > "$DIR/front.log" 2>&1 &
echo $! > "$DIR/front.pid"
for _ in $(seq 1 300); do
  if curl -sf http://127.0.0.1:3100/ready > /dev/null; then
    echo "ready: push and query http://127.0.0.1:3100 (ring: http://127.0.0.1:3100/ring)"
    exit 0
  fi
  sleep 0.2
done
echo "not ready after 60 s; see $DIR/*.log" >&2
exit 1
