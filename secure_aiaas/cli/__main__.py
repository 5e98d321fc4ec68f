from secure_aiaas.cli import app

app(prog_name="secure-aiaas")
