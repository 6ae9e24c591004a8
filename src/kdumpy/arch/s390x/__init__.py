"""IBM Z: kdumpy configures kdump there (:mod:`.kdump`) but does not read its dumps."""
