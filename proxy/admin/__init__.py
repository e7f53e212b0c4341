"""The admin API: a separate listener for operators (tenants, keys, balances, audit)."""
