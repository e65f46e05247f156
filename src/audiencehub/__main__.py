from audiencehub.cli import main

main()
