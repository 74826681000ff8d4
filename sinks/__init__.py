"""Writers from Kafka into ClickHouse and Redis, and the loop that drives them."""
