"""The normalised event, the payment lifecycle, and the order-independent fold into `payments`.
Imports nothing here: SQLite's writer process loads only the modules it runs."""
