"""Domain logic, one module per capability. Services take a database session and the acting
user as arguments, ``flush()`` but never commit, and raise ``KitaError`` subclasses."""
