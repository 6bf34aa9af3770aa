"""Web Push: VAPID keys (:mod:`.vapid`), subscription checks and the push-service allow-list
(:mod:`.endpoints`), payloads (:mod:`.payload`), aes128gcm encryption (:mod:`.ece`) and the
concurrent sender (:mod:`.sender`).

Nothing is imported here on purpose: encryption worker processes import :mod:`.ece` alone,
without aiohttp or Flask.
"""
