"""Prefect task wrappers: config + input manifests in -> run one s3core stage -> manifest out.

Importing this package points Prefect's home, results and the other caches inside the project before
prefect itself is imported (s3core.paths.configure_environment).
"""

from s3core.paths import configure_environment

configure_environment()
