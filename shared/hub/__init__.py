"""The hub library every service uses: contracts, event store, outbox, consumers, chassis."""
