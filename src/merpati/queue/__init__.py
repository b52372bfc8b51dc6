"""The outbound queue: durable store, routing, SMTP client, retries, DSNs and the runner.

Modules: ``store`` (SQLite + message files in data_dir/queue), ``routing`` (MX, relay host),
``smtpproto`` (sans-I/O SMTP client protocol pieces), ``client`` (asyncio SMTP client),
``transport`` (one destination: MX fallback, TLS, transactions), ``dsn`` (RFC 3464 reports),
``notices`` (bounces, warnings and the retry schedule, decided),
``runner`` (scheduling, concurrency, retries), ``service`` (``start_queue_service``) and
``cli`` (``merpati queue ...``).
"""
