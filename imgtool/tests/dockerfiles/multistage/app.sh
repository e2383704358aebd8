echo "hello $1 from a scratch image"
