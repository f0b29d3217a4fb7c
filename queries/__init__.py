"""Read side: typed, keyword-only functions over a connection; aggregation happens in SQL."""
