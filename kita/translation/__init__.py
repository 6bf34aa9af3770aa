"""Translation adapters without Flask: the phrasebook of vetted standard messages, machine
translation providers, the glossary of Kita terms kept intact, and language detection.

The service that combines them with the translation memory is ``kita.services.translation``.
"""
