"""Read-side stores behind the API: what handlers read, built once and passed in.

Handlers parse a request, call a store and respond; the SQL, the Redis keys and the quoting
live here. ClickHouse values travel as server-side query parameters (``{name:Type}``), never as
text spliced into SQL. ClickHouse stores are blocking (call them in a thread); the live-value
store is asyncio Redis.
"""
