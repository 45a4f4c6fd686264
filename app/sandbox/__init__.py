"""Local stand-ins for production: embedded Postgres, loopback stubs, demo data.

Used by `python -m app demo`, the tests and the benchmarks; never by the service in production.
"""
