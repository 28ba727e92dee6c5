"""What every service shares: the fact envelope and registry, the topic registry, the Kafka
bus with dead letters, the Postgres inbox and outbox, migrations, configuration, telemetry
and ids. Nothing here connects at import time."""
