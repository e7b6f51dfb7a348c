int main() { return 0; }  // Being written.
