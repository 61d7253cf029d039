from identity.cli.main import app

app(prog_name="identity")
