"""Write side and rules: every change is one validated transaction that leaves an audit row."""
