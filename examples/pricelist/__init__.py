"""The worked example: a customer's items priced from several suppliers into a price list."""
