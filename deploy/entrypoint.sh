#!/bin/sh
# pcsync's container entrypoint: `pcsync serve` with the config at $PCSYNC_CONFIG
# when that file exists (a mounted config), else with one written from the
# environment. Secrets stay in the environment: the written config names them
# (`${HUBSPOT_TOKEN}`) and pcsync reads them when it starts, so they never reach a
# file. tests/deploy.rs runs this script outside a container, as the image does.
#
# Required: PCSYNC_PUBLIC_URL, HUBSPOT_TOKEN, HUBSPOT_CLIENT_SECRET.
# Optional, with defaults:
#   PCSYNC_LISTEN              0.0.0.0:8080
#   PCSYNC_STATE               /var/lib/pcsync/pcsync.db   (on the volume)
#   PCSYNC_RULES               /etc/pcsync/rules
#   PCSYNC_ADMIN_TOKEN         unset: /rules and /admin/ routes answer 403
#   HUBSPOT_APP_ID             unset: no echo suppression by app id
#   HUBSPOT_BASE_URL           https://api.hubapi.com
#   PARTNER_CENTRAL_CATALOG    AWS   (or Sandbox)
#   AWS_REGION                 us-east-1
#   PARTNER_CENTRAL_ENDPOINT_URL, SNS_ENDPOINT_URL   unset: AWS's endpoints
#   PCSYNC_SNS_TOPIC_ARN       unset: no SNS notifications
#   EVENTBRIDGE_SECRET         unset: /events/partnercentral answers 404
# AWS credentials come from the SDK's chain (the task role on ECS).
set -eu

config="${PCSYNC_CONFIG:-/etc/pcsync/pcsync.yaml}"

# A value written into YAML as is: single-quoted, quotes doubled.
q() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/''/g")"
}

write_config() {
  : "${PCSYNC_PUBLIC_URL:?set PCSYNC_PUBLIC_URL to the https address HubSpot calls}"
  : "${HUBSPOT_TOKEN:?set HUBSPOT_TOKEN to the private app's access token}"
  : "${HUBSPOT_CLIENT_SECRET:?set HUBSPOT_CLIENT_SECRET to the app's client secret}"
  echo "listen: $(q "${PCSYNC_LISTEN:-0.0.0.0:8080}")"
  echo "public_url: $(q "$PCSYNC_PUBLIC_URL")"
  echo "rules: $(q "${PCSYNC_RULES:-/etc/pcsync/rules}")"
  echo "state: $(q "${PCSYNC_STATE:-/var/lib/pcsync/pcsync.db}")"
  if [ -n "${PCSYNC_ADMIN_TOKEN:-}" ]; then
    echo 'admin_token: ${PCSYNC_ADMIN_TOKEN}'
  fi
  echo "hubspot:"
  echo '  token: ${HUBSPOT_TOKEN}'
  echo '  client_secret: ${HUBSPOT_CLIENT_SECRET}'
  if [ -n "${HUBSPOT_BASE_URL:-}" ]; then
    echo "  base_url: $(q "$HUBSPOT_BASE_URL")"
  fi
  if [ -n "${HUBSPOT_APP_ID:-}" ]; then
    case "$HUBSPOT_APP_ID" in
      *[!0-9]*) echo "HUBSPOT_APP_ID must be a number, not $HUBSPOT_APP_ID" >&2; exit 2 ;;
    esac
    echo "  app_id: $HUBSPOT_APP_ID"
  fi
  echo "partner_central:"
  echo "  catalog: $(q "${PARTNER_CENTRAL_CATALOG:-AWS}")"
  echo "  region: $(q "${AWS_REGION:-us-east-1}")"
  if [ -n "${PARTNER_CENTRAL_ENDPOINT_URL:-}" ]; then
    echo "  endpoint_url: $(q "$PARTNER_CENTRAL_ENDPOINT_URL")"
  fi
  if [ -n "${PCSYNC_SNS_TOPIC_ARN:-}" ]; then
    echo "notifications:"
    echo "  sns_topic_arn: $(q "$PCSYNC_SNS_TOPIC_ARN")"
    if [ -n "${SNS_ENDPOINT_URL:-}" ]; then
      echo "  sns_endpoint_url: $(q "$SNS_ENDPOINT_URL")"
    fi
  fi
  if [ -n "${EVENTBRIDGE_SECRET:-}" ]; then
    echo "eventbridge:"
    echo '  shared_secret: ${EVENTBRIDGE_SECRET}'
  fi
}

if [ ! -f "$config" ]; then
  config="${TMPDIR:-/tmp}/pcsync.yaml"
  write_config > "$config"
fi
exec "${PCSYNC_BIN:-pcsync}" serve --config "$config" "$@"
