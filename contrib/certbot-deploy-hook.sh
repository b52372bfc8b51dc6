#!/bin/sh
# certbot deploy hook: copy the renewed certificate where the merpati user can read it and
# make the running server load it (SIGHUP reloads TLS without dropping connections).
# Install: cp contrib/certbot-deploy-hook.sh /etc/letsencrypt/renewal-hooks/deploy/merpati.sh
set -e
install -o merpati -g merpati -m 0644 "$RENEWED_LINEAGE/fullchain.pem" /var/lib/merpati/tls/fullchain.pem
install -o merpati -g merpati -m 0600 "$RENEWED_LINEAGE/privkey.pem" /var/lib/merpati/tls/privkey.pem
systemctl reload merpati
