"""The API's collections and objects, one module per kind (routes, reading, rendering)."""
