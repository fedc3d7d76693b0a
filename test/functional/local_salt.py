"""
The formula's Salt modules loaded by Salt's own loader from the checkout, masterless, as a
minion loads them (``SaltLoader``), for the functional tests (``from local_salt import ...``).
"""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def minion_opts(minion_id, pillar, cachedir):
    """Opts of a minion whose extension modules are the checkout's _utils/_modules/_states."""
    import salt.config

    opts = salt.config.minion_config(None)
    opts.update(
        {
            "id": minion_id,
            "file_client": "local",
            "cachedir": cachedir,
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "module_dirs": [os.path.join(REPO, "_modules")],
            "states_dirs": [os.path.join(REPO, "_states")],
            "pillar": {"etcd": pillar},
            "grains": {"id": minion_id},
            "test": False,
        }
    )
    return opts


class SaltLoader:
    """Salt's loader for one minion: ``.modules`` (__salt__), ``.states``, ``.utils``."""

    def __init__(self, minion_id, pillar, cachedir):
        import salt.loader

        self.opts = minion_opts(minion_id, pillar, cachedir)
        self.utils = salt.loader.utils(self.opts)
        self.modules = salt.loader.minion_mods(self.opts, utils=self.utils)
        self.states = salt.loader.states(
            self.opts, self.modules, self.utils, salt.loader.serializers(self.opts)
        )
