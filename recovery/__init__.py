"""Recovery: finding the events whose webhooks never arrived, by reading the providers' own APIs, and
storing them through the same EventWriter.store() as deliveries (README, "Missed webhooks")."""
