"""Database layer: models, engine and sessions, migrations and the demo data generator."""
