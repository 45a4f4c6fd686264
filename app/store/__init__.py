"""The only code that talks to Postgres: a typed Store over one narrow RPC seam."""
