"""The response cache: answers of chat, completions and embeddings, kept per team.

``keys`` turns a request into its cache key, ``backends`` keeps entries (in this process,
bounded in bytes, or in Redis shared by replicas), ``replay`` turns a stored answer into a
stream and a passed-through stream into a stored answer, ``semantic`` finds a near
duplicate by embedding, and ``service.ResponseCache`` is what the gateway calls. Nothing
here is imported on the hot path of a model that has no ``cache:`` configured.
"""
