"""The bottom layer: small things every app shares (who acts, ...). It imports Django and
the standard library only, never an app of the project."""
