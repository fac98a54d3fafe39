from scimflow.cli import main

main()
