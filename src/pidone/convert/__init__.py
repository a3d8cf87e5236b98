"""`pidone import`: a supervisord config or a uWSGI ini -> Procfile + pidone.toml.

Pure: text in, text out (commands.py reads and writes the files). Each
reader (supervisord.py, uwsgi.py) builds a Conversion (model.py) and lists
what it could not translate, each with its file:line and why; write.py
turns a Conversion into the two files.
"""
