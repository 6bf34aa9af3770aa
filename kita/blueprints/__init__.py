"""The thin HTTP layer: parse, authorise, call a service, render."""
