<?php
// WHMCS's UsageBilling contracts and classes, as WHMCS names them (WHMCS\UsageBilling\…), kept
// to what the module and its tests use. Inside WHMCS the real ones are loaded instead.

namespace WHMCS\UsageBilling\Contracts\Metrics {
    interface UsageInterface
    {
        public function value();

        public function collectedAt();
    }

    interface UnitInterface
    {
        const TYPE_INT = 'int';
        const TYPE_FLOAT_PRECISION_LOW = 'float_low';
        const TYPE_FLOAT_PRECISION_HIGH = 'float_high';

        public function name();

        public function type();
    }

    interface MetricInterface
    {
        const TYPE_SNAPSHOT = 'snapshot';
        const TYPE_PERIOD_DAY = 'day';
        const TYPE_PERIOD_MONTH = 'month';

        public function usage();

        public function withUsage(?UsageInterface $usage = null);

        public function units();

        public function systemName();

        public function displayName();

        public function type();
    }

    interface ProviderInterface
    {
        public function metrics();

        public function usage();

        public function tenantUsage($tenant);
    }
}

namespace WHMCS\UsageBilling\Metrics {
    use WHMCS\UsageBilling\Contracts\Metrics\MetricInterface;
    use WHMCS\UsageBilling\Contracts\Metrics\UnitInterface;
    use WHMCS\UsageBilling\Contracts\Metrics\UsageInterface;

    class Usage implements UsageInterface
    {
        private $value;
        private $collectedAt;

        public function __construct($value, $collectedAt = null, $startAt = null, $endAt = null)
        {
            if (!is_numeric($value)) {
                throw new \InvalidArgumentException('a usage value must be a number');
            }
            $this->value = (float) $value;
            $this->collectedAt = is_numeric($collectedAt) ? (int) $collectedAt : time();
        }

        public function value()
        {
            return $this->value;
        }

        public function collectedAt()
        {
            return $this->collectedAt;
        }
    }

    class NoUsage extends Usage
    {
    }

    class Metric implements MetricInterface
    {
        private $systemName;
        private $displayName;
        private $type;
        private $units;
        private $usage;

        public function __construct($systemName, $displayName = null, $type = null, ?UnitInterface $units = null, ?UsageInterface $usage = null)
        {
            $types = [self::TYPE_SNAPSHOT, self::TYPE_PERIOD_DAY, self::TYPE_PERIOD_MONTH];
            $this->systemName = $systemName;
            $this->displayName = $displayName ?? $systemName;
            $this->type = in_array($type, $types, true) ? $type : self::TYPE_SNAPSHOT;
            $this->units = $units ?? new Units\FloatingPoint('');
            $this->usage = $usage ?? new NoUsage(0);
        }

        public function usage()
        {
            return $this->usage;
        }

        public function withUsage(?UsageInterface $usage = null)
        {
            return new static($this->systemName, $this->displayName, $this->type, $this->units, $usage);
        }

        public function units()
        {
            return $this->units;
        }

        public function systemName()
        {
            return $this->systemName;
        }

        public function displayName()
        {
            return $this->displayName;
        }

        public function type()
        {
            return $this->type;
        }
    }
}

namespace WHMCS\UsageBilling\Metrics\Units {
    use WHMCS\UsageBilling\Contracts\Metrics\UnitInterface;

    abstract class AbstractUnit implements UnitInterface
    {
        private $name;
        private $singlePerUnitName;
        private $pluralPerUnitName;

        public function __construct($name, $singlePerUnitName = null, $pluralPerUnitName = null, $prefix = null, $suffix = null)
        {
            $this->name = $name;
            $this->singlePerUnitName = $singlePerUnitName;
            $this->pluralPerUnitName = $pluralPerUnitName;
        }

        public function name()
        {
            return (string) $this->name;
        }
    }

    class WholeNumber extends AbstractUnit
    {
        public function type()
        {
            return UnitInterface::TYPE_INT;
        }
    }

    class FloatingPoint extends AbstractUnit
    {
        public function type()
        {
            return UnitInterface::TYPE_FLOAT_PRECISION_HIGH;
        }
    }

    class Bytes extends FloatingPoint
    {
        public function __construct($name = 'Bytes', $singlePerUnitName = null, $pluralPerUnitName = null, $prefix = null, $suffix = 'B')
        {
            parent::__construct($name, $singlePerUnitName, $pluralPerUnitName, $prefix, $suffix);
        }
    }

    class MegaBytes extends Bytes
    {
        public function __construct($name = 'Megabytes', $singlePerUnitName = null, $pluralPerUnitName = null, $prefix = null, $suffix = 'MB')
        {
            parent::__construct($name, $singlePerUnitName, $pluralPerUnitName, $prefix, $suffix);
        }
    }

    class GigaBytes extends Bytes
    {
        public function __construct($name = 'Gigabytes', $singlePerUnitName = null, $pluralPerUnitName = null, $prefix = null, $suffix = 'GB')
        {
            parent::__construct($name, $singlePerUnitName, $pluralPerUnitName, $prefix, $suffix);
        }
    }

    class Accounts extends WholeNumber
    {
        public function __construct($name = 'Accounts', $singlePerUnitName = 'Account', $pluralPerUnitName = 'Accounts', $prefix = null, $suffix = '')
        {
            parent::__construct($name, $singlePerUnitName, $pluralPerUnitName, $prefix, $suffix);
        }
    }

    class Domains extends WholeNumber
    {
        public function __construct($name = 'Domains', $singlePerUnitName = 'Domain', $pluralPerUnitName = 'Domains', $prefix = null, $suffix = '')
        {
            parent::__construct($name, $singlePerUnitName, $pluralPerUnitName, $prefix, $suffix);
        }
    }
}
