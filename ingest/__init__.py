"""Storing events exactly once: the write queue and group commit (`store.EventWriter.store`), and the
batch writers per database behind it. Imports nothing here: SQLite's writer process loads only the
modules it runs."""
