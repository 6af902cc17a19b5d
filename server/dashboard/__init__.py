"""The coordinators' dashboard: a FastAPI app over the run store's reader, server-rendered
pages with htmx for the live parts, a JSON API behind every page, and token access."""
