"""HTTP routes, thin: each reads the request, calls the service logic, renders the result."""
