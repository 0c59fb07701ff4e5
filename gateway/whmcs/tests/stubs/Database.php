<?php
// WHMCS's database facade (WHMCS\Database\Capsule, Laravel's query builder inside WHMCS) as an
// in-memory store: tables of rows, the few builder calls the module makes, and the schema calls
// that create its table. Rows come back as stdClass, as Laravel gives them.

namespace WHMCS\Database {
    class Capsule
    {
        /** @var array<string, array<int, array>> table name => rows */
        public static $tables = [];

        public static function table(string $name): Query
        {
            if (!array_key_exists($name, self::$tables)) {
                throw new \RuntimeException("no table {$name}");
            }
            return new Query($name);
        }

        public static function schema(): Schema
        {
            return new Schema();
        }

        /** Empties every table (a test's start). */
        public static function reset(): void
        {
            self::$tables = ['tblhosting' => []];
        }
    }

    class Schema
    {
        public function hasTable(string $name): bool
        {
            return array_key_exists($name, Capsule::$tables);
        }

        public function create(string $name, \Closure $columns): void
        {
            if ($this->hasTable($name)) {
                throw new \RuntimeException("table {$name} exists already");
            }
            $columns(new Blueprint());
            Capsule::$tables[$name] = [];
        }
    }

    /** Takes any column definition call, fluently. */
    class Blueprint
    {
        public function __call($method, $arguments)
        {
            return $this;
        }
    }

    class Query
    {
        private $table;
        private $wheres = [];

        public function __construct(string $table)
        {
            $this->table = $table;
        }

        public function where(string $column, $operatorOrValue, $value = null): self
        {
            if (func_num_args() === 3 && !in_array($operatorOrValue, ['=', '<'], true)) {
                throw new \RuntimeException('only = and < are stood in for');
            }
            $this->wheres[] = func_num_args() === 3 ? [$column, $operatorOrValue, $value] : [$column, '=', $operatorOrValue];
            return $this;
        }

        public function first()
        {
            foreach ($this->matching() as $row) {
                return (object) $row;
            }
            return null;
        }

        public function get(): array
        {
            return array_map(function ($row) {
                return (object) $row;
            }, array_values($this->matching()));
        }

        public function insert(array $row): bool
        {
            Capsule::$tables[$this->table][] = $row;
            return true;
        }

        public function update(array $values): int
        {
            $count = 0;
            foreach (array_keys($this->matching()) as $index) {
                Capsule::$tables[$this->table][$index] = array_merge(Capsule::$tables[$this->table][$index], $values);
                $count++;
            }
            return $count;
        }

        public function delete(): int
        {
            $matching = $this->matching();
            foreach (array_keys($matching) as $index) {
                unset(Capsule::$tables[$this->table][$index]);
            }
            return count($matching);
        }

        private function matching(): array
        {
            return array_filter(Capsule::$tables[$this->table], function (array $row) {
                foreach ($this->wheres as [$column, $operator, $value]) {
                    if (!array_key_exists($column, $row)) {
                        return false;
                    }
                    $holds = $operator === '<'
                        ? strcmp((string) $row[$column], (string) $value) < 0 // dates as MySQL compares them
                        : (string) $row[$column] === (string) $value;
                    if (!$holds) {
                        return false;
                    }
                }
                return true;
            });
        }
    }
}

namespace WHMCS\Service {
    class Status
    {
        const PENDING = 'Pending';
        const ACTIVE = 'Active';
        const SUSPENDED = 'Suspended';
        const TERMINATED = 'Terminated';
        const CANCELLED = 'Cancelled';
        const FRAUD = 'Fraud';
        const COMPLETED = 'Completed';
    }
}
