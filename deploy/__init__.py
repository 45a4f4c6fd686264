"""Files for the platforms that run the service (fly_trigger.py, to_supabase_migrations.py)."""
