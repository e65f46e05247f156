"""Query Service: Spark-SQL dialect translation, per-sandbox tables, the PostgreSQL wire protocol."""
