"""campaign-queue: sends AI-written WhatsApp campaign messages from a Postgres queue."""
