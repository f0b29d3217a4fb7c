"""Report builders (PDF, CSV, Excel): pure functions that return bytes."""
