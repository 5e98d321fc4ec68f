"""secure_aiaas: privacy-focused secure inference service.

Importing the package has no side effects: settings, keys, policies, stores and models are
loaded by entry points (`secure_aiaas.api.app.create_app`, `secure_aiaas.cli`).
"""

__version__ = "0.1.0"
